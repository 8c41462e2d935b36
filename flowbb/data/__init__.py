"""flowbb.data"""
