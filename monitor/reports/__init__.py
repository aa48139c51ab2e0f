"""What people read: the model's drift and performance report and the post-market
surveillance (compliance) report, each one self-contained HTML file.
"""
